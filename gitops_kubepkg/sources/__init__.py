"""Git sources: mirror cache of bare repositories, polling, webhooks, revision discovery."""
