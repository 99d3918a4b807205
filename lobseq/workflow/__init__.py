"""Workflow: pipeline files, their stages, skip-if-unchanged, the run lock and the run lifecycle."""
