"""The service layer pages call: the workspace, caching, background jobs, memoised analytics
and model calls. Pages never import analytics or models directly."""
