"""defenses: decide the stage-1 and stage-2 training sets."""

from mbdef.defenses.base import CleanFinetune, Defense, NoDefense, TrainingPlan
from mbdef.defenses.crow import Crow
from mbdef.defenses.decoding import CleanGen, Decoding
from mbdef.defenses.mb_defense import MBDefense
from mbdef.defenses.oracle import OracleUnlearn
from mbdef.defenses.onion import Onion
from mbdef.defenses.pdb import PDB
from mbdef.defenses.weights import Prune, Quantize

__all__ = ["CleanFinetune", "CleanGen", "Crow", "Decoding", "Defense", "MBDefense", "NoDefense", "Onion",
           "OracleUnlearn", "PDB", "Prune", "Quantize", "TrainingPlan"]
