"""The task page people reach from a task's `url`."""
