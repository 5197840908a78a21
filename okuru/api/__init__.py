"""The REST API for integrators (Django Ninja): bearer tokens, the same rights as the UI.

Every endpoint goes through the same named actions and forms as the operator screens, so the
API accepts and rejects exactly what the UI does, with the same messages.
"""
