"""Changes to tipi measured before they are proposed: each is put on the path of one variant only.

``prototypes/hydra_plugins/`` is a portion of Hydra's ``hydra_plugins``
namespace (no ``__init__.py`` there on purpose): Hydra only instantiates
sweepers and launchers defined under that namespace.
"""
