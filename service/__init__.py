"""Taskdesk's engine: validation, the task life cycle, workers and the HTTP API.

Depends on ``storage``; knows nothing of widgets.
"""
