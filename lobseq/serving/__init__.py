"""Serving: the packaged model format, one loader, one forecaster, batch predict and the HTTP service."""
