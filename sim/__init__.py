"""Simulation side of the project: stand-ins for the outside world that tests and demos run against.

Two parts live here, kept apart because they play opposite roles. ``sim.fakeapi`` is a stateful fake
Kubernetes API server over real HTTP, so the operator, ``kubectl`` and the official client talk to it exactly
as they would to a cluster. The machine simulator (a plain client of *any* API server) plays the physical
machines. Nothing in the operator imports this package; it is only ever on the other end of a socket.
"""
