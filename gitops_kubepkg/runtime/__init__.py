"""The controller runtime: informers and their shared cache, the one work queue, supervised workers.

Generic over what is reconciled (it knows keys and Kubernetes objects, not KubePkgs or
Repositories): ``controller.runtime`` wires Repositories and KubePkgs onto it.

    informer.py  list+watch per kind into a shared cache; handlers enqueue keys
    queue.py     one queue: per-key dedup, one worker per key, delays, jittered backoff, rate limit
    workers.py   worker threads under supervision: any exception is that key's failure
"""
