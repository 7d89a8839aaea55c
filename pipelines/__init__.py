"""KFP pipelines. Every module here that defines `PIPELINE` (a `@dsl.pipeline` function) is discovered by
`fathom pipeline compile|run|submit|schedule`; `LOCAL_ARGUMENTS` (a dict) are the arguments of the embedded run."""
