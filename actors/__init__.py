"""The actor layer: the pure power state machines (`actors.fsm`) and the Thespian shells around them.

The state machines decide; the shells only carry messages in and effects out, and `kubeapi`
does the Kubernetes I/O. Keeping the deciding code free of threads and sockets is what lets the whole
behaviour be tested as tables.
"""
