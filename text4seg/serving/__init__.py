"""Serving for people: the ``text4seg app`` web page (:mod:`.app`, :mod:`.page`)."""
