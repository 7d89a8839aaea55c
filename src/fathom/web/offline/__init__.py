"""The offline web: a generated encyclopedia of fictional entities, served on loopback, with its ground truth.

    web = ensure_offline_web(seed=0, n_pages=120)      # cached under fathom_home()/offline-web/
    qs = web.questions(5, hops=2)                      # answerable only by reading the site
    with serve_offline_web(web) as base:               # http://127.0.0.1:PORT (Host: atlas.fathom.test)
        ...
"""

from fathom.web.offline.questions import WorldQA
from fathom.web.offline.render import OFFLINE_HOST, SITE_URL
from fathom.web.offline.server import create_site_app, serve_offline_web
from fathom.web.offline.site import (
    GENERATOR_VERSION,
    OfflineWeb,
    OfflineWebError,
    build_offline_web,
    default_site_dir,
    ensure_offline_web,
)

__all__ = [
    "GENERATOR_VERSION",
    "OFFLINE_HOST",
    "SITE_URL",
    "OfflineWeb",
    "OfflineWebError",
    "WorldQA",
    "build_offline_web",
    "create_site_app",
    "default_site_dir",
    "ensure_offline_web",
    "serve_offline_web",
]
