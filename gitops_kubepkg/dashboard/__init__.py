"""The web dashboard: the controller's view of every repository, revision, package and object.

Place in the flow: beside the CLI, on top of what the controller writes. ``controller
--dashboard-listen HOST:PORT`` starts it on every replica (reading needs no leadership; actions
write through the API server, so any replica can take them). The parts:

- ``state.py``: informers of Repositories, KubePkgs, PackageRevisions and Events (one list+watch
  each, ``runtime.informer``), and a version counter per topic that the live stream waits on;
- ``views.py``: pure functions from cached objects to the JSON the pages read (``API.md``);
- ``auth.py``: who looks (a Kubernetes token through ``access``, or a session cookie) and what
  RBAC lets them get, with briefly cached answers;
- ``actions.py``: reconcile, promote and approve, doing what the CLI commands do;
- ``server.py``: the HTTP endpoints on ``serving.HardenedServer``, the server-sent event stream
  and the static files of ``static/``.
"""
