"""Plans that compose the stages: budget (what money buys), STaR rounds, the end-to-end demo,
and the offline bundle for internet-off notebooks (bundle/).

May import: every stage and layer below; only `cli` imports this.
"""
