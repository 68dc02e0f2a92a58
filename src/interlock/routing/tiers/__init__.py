"""Model selection: route each request to the cheapest adequate model tier.

features.py (what a request looks like) → classifier.py (the fast rule path) and
learned.py (the optional trained model) → router.py (pins, specialised tiers, the
decision); escalation.py checks a small tier's answer. See docs/routing.md.
"""

from interlock.routing.tiers.router import SIZES, TierChoice, TierRouter

__all__ = ["SIZES", "TierChoice", "TierRouter"]
