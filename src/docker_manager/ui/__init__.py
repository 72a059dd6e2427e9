"""The dashboard at `/ui`: server-rendered pages (Jinja2) with htmx for the live parts.

`session` (a token exchanged for a signed, encrypted, expiring cookie; CSRF per session), `pages`
(the routes: every action goes through the same services and policy as the API) and `render`
(templates, security headers). The token itself never reaches the page, a URL or storage.
"""
