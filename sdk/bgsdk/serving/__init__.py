"""Running models at scale: a Triton server (:mod:`.triton_repo`, :mod:`.triton_client`,
:mod:`.pytriton_serve`) and bulk folders, here or on Ray (:mod:`.bulk`).

Optional extras (``bgsdk[triton]``, ``bgsdk[ray]``) are imported only by the code paths that need them.
"""
