"""End-to-end tests: the proxy started as `privproxy serve`, driven by SIPp."""
