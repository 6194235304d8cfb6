"""Pure state machines: the power machine of one physical machine and the policy of a group.

Nothing in this package does I/O, reads the clock or imports thespian, kubernetes, grpc or
prometheus_client; `now` is always an argument. Modules:

- `events`  : what a machine reacts to (facts past tense, requests imperative);
- `effects` : what a machine asks the shell to do (pure data);
- `node`    : the transition table `TRANSITIONS` and `step`;
- `group`   : which machines to power on, cancel or report, as pure functions over `MachineView`s;
- `group_planning`: what a group's size change, schedule window and status come to (refusals as values);
- `derive`  : rebuilding a machine after a restart from its status, its Jobs and its Kubernetes Node;
- `effect_failures`: which event a failed effect becomes for the machine;
- `errors`  : the refusals the above raise.

This file imports nothing on purpose: a shell that needs only `events` or `effects` must not load the transition
table.
"""
