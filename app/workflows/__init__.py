"""Business rules: pure functions over models and a session.

No request, no templates, no FAB imports. Each step raises a DomainError
subclass; views map them to HTTP codes (400/403/404/409) and Chinese messages.
"""
