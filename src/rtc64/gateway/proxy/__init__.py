"""The stateful SIP proxy (RFC 3261 §16), built by composition.

Read ``service.py`` first: ``Proxy`` admits messages, feeds the transaction layer and
dispatches its events. The parts, in the order an INVITE meets them:

- ``router``: pure routing decisions (validation, Route preprocessing, local or foreign,
  targets from bindings) returned as values: ``Reply``, ``Forward``, ``Register``,
  ``Authenticate``, ``Lookup``;
- ``routing``: the async step doing the look-ups (authentication, location store,
  registrar) between the router's decisions;
- ``forwarder``: the transaction user (pending requests, branches, responses, CANCEL,
  ACK for 2xx, stray responses); ``nexthop`` resolves targets (RFC 3263, NAT64), ``splice``
  builds the bytes, ``forking`` picks the best response;
- ``racing``: happy eyeballs per branch; ``calls``: Timer C, dialogs (``dialogs``) and the
  calls the gateway ends by itself — collaborators the forwarder calls through the
  protocols in ``branches``;
- ``hops``: next hops, Via, Record-Route and Path values, loop detection, call tokens.
"""
