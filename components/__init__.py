"""KFP components: one thin `@dsl.component` per stage. Bodies import `fathom` and call the stage function."""
