"""Conveyor: a CI/CD workflow-task service."""
