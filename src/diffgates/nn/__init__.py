"""Neural-network modules of diffgates: LogicLayer, GroupSum and their wiring."""
from .connections import CONNECTION_KINDS, make_connections
from .group_sum import GroupSum
from .logic_layer import GradFactor, LogicLayer, soft_sampling

__all__ = ["LogicLayer", "GroupSum", "GradFactor", "make_connections", "CONNECTION_KINDS", "soft_sampling"]
