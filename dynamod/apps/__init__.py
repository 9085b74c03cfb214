"""Applications: scripts run in children forked from the live inventory."""
