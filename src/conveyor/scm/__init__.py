"""Source control: the git CLI, always with argument lists."""
