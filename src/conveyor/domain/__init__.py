"""Pure domain: states, transitions, value objects. No I/O."""
