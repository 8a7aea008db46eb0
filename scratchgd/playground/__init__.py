"""``scratchgd playground``: a local web page where a learner changes the batch size and watches the run.

Every run on the page is :func:`scratchgd.fit`, driven through its public seam
(``fit(hooks=[...])``, :class:`scratchgd.hooks.Hook`) for live progress, pause,
step and stop; its settings are ``scratchgd train``'s flags, checked by its
parser (:mod:`.settings`). :mod:`.runs` trains them one at a time in a worker
thread; :mod:`.app` serves the page and the JSON API (Starlette, the
``playground`` extra, imported only there). See ``docs/playground.md``.
"""
