# Accumulation, requantization and MX output units, the systolic array and its
# precision-scalable PE (explicit re-exports).
from .accumulate import BfpAccumulator as BfpAccumulator
from .accumulate import IntAccumulator as IntAccumulator
from .array import SystolicArray as SystolicArray
from .mxout import BfpToFloat32 as BfpToFloat32
from .mxout import MxElementFormat as MxElementFormat
from .mxout import MxQuantizer as MxQuantizer
from .pe import Mode as Mode
from .pe import ProcessingElement as ProcessingElement
from .requant import Requantizer as Requantizer
from .requant import RequantRounding as RequantRounding
