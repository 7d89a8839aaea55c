"""Release: KServe manifests, offline validation, apply/rollback, local serving and smoke tests."""
