"""The pure rules: who belongs in a list, what a target should hold, which flags to raise.

Nothing here reads a database, calls a provider or names one: the core imports the standard
library, the connector contract's types and the config's, and the shell passes the facts in.
"""
