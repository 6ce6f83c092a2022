"""Plans that compose the stages: budget (what money buys), STaR rounds, the end-to-end demo.

May import: every stage and layer below; only `cli` imports this.
"""
