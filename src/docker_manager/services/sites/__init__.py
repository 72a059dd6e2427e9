"""nginx sites and traffic switching: the site routes and switches (`service`), where a site
sends its requests (`upstreams`), and sites that follow a container's address (`addresses`)."""

from docker_manager.services.sites.service import SiteService
from docker_manager.services.sites.switch import tls_change_of
from docker_manager.services.sites.upstreams import ident_of, upstream_of

__all__ = ["SiteService", "ident_of", "tls_change_of", "upstream_of"]
