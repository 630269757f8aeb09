"""Subscriptions and notifications: storage (`subscriptions`), matching bundle events to subscriptions
(`matching`, called by the indexer), and delivery with retries (`delivery`, the handler of the notify queue).
"""

QUEUE = "notify"  # the job queue of dss.events.bus that carries one notification per message
