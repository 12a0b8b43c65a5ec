"""SLA clocks, one module per concern:

- `clock`: a clock's arithmetic: open (wall or business time), restart, pause, resume, measure;
- `outcome`: how a clock ends: met (on time or late), cancelled;
- `due`: the warnings and breaches whose instant has come;
- `follow`: what one applied event does to the clocks (the `clocks` step of core.pipeline);
- `breach`: what the policy does about a breach, from its table of actions (recycle the lead, notify, reassign).

Output ids depend on the clock (lead, SLA, start) and what happened, not on what triggered the check, so a breach
seen by an event and by a timer is the same output, emitted once.
"""
