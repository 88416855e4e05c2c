"""defenses: decide the stage-1 and stage-2 training sets."""

from mbdef.defenses.base import CleanFinetune, Defense, NoDefense, TrainingPlan
from mbdef.defenses.mb_defense import MBDefense
from mbdef.defenses.oracle import OracleUnlearn
from mbdef.defenses.pdb import PDB
from mbdef.defenses.weights import Prune, Quantize

__all__ = ["CleanFinetune", "Defense", "MBDefense", "NoDefense", "OracleUnlearn", "PDB", "Prune", "Quantize",
           "TrainingPlan"]
