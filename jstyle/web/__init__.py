"""jstyle's local web pages: the live page of one run (``python -m jstyle.run --web``,
:mod:`jstyle.web.server`) and the studio that uploads images and queues runs
(``python -m jstyle.studio``, :mod:`jstyle.web.studio`).

Both are served by the standard library's threaded HTTP server on a local address
(:mod:`jstyle.web.base`); the pages are the static files in ``jstyle/web/static`` (plain
HTML, CSS and JavaScript: nothing is loaded from the internet) and follow the run through
a stream of server-sent events. Nothing here is imported unless one of the two is asked for.
"""
