"""The staff's review desk: conversations with their transcripts, the customers' ratings,
the agents' answers, and the satisfaction survey with its weekly trends.

Only staff reach the admin (Django's own check). One module per model admin; importing them
registers them. Every list is built from a fixed number of queries: counts are subqueries,
related rows come through select_related.
"""

from conversations.admin import conversations, feedback, satisfaction

__all__ = ["conversations", "feedback", "satisfaction"]
