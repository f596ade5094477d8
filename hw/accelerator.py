"""The lpmac accelerator: one packet stream in, one packet stream out (docs/protocol.md).

Inside (docs/architecture.md, "Accelerator"):

    i_stream -> command decoder --+--> activation buffer (2 banks) --+
                  |               +--> MX activation scales (2 banks)+--> sequencer --> array
                  |               +--> weight FIFO --------------------------------> (shadow)
                  |               +--> MX weight-scale FIFO ---------------+
                  |               +--> requantization parameters           |
                  |                                                        v
                  |        array columns -> IntAccumulator (+ BfpAccumulator) <-> accumulator
                  |                                                     SRAM (2 banks)
                  |                                                        |
                  +--> response queue --> output engine <-- result FIFO <-- packer <-- drain
                                               |                 (Requantizer / int32 /
                                           o_stream               BfpToFloat32 / MxQuantizer)

The decoder parses packets and validates them; LOAD_ACTIVATIONS / LOAD_SCALES write the bank
named in the header (waiting while a queued or running COMPUTE reads it); COMPUTE queues a
job and streams its payload (weights, and in MX modes the weight scales) into FIFOs that the
job consumes at the pace of computation. The sequencer runs one job at a time: for every
N-tile and every K-tile (R rows of K) it sends the M-tile's activation vectors through the
array while the next weight tile loads into the shadow registers. Column sums are added into
the accumulator SRAM (address = row m) by read-modify-write; in the MX modes the integer sums
of a K-block are completed first and then added into the BFP accumulators with the block's
exponent. After the last K-tile of an N-tile (a group of BK / lc N-tiles for MX outputs), the
bank is drained through the output unit while the next N-tile computes in the other bank.
Every response is queued in order and sent by the output engine.

Performance: one activation vector per cycle (R * C MACs, twice that in 4-bit-weight modes)
whenever the weight FIFO holds the next tile and the accumulator bank is free; bubbles only
pad array passes shorter than `pass_min(mode)` vectors (read-modify-write hazards).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.config import ArrayConfig
from golden.protocol import check_accelerator_config

from . import accumulate
from .accumulation import Accumulation, accumulator_row, bfp_row
from .actbuffer import ActivationBuffer
from .arith import SkidBuffer
from .array import SystolicArray
from .banks import AccumulatorBanks, ActivationBankUses
from .configure import ConfigureUnit
from .counters import PerformanceCounters
from .decoder import PAYLOAD_LAYOUT, CommandDecoder
from .drain import Drain
from .params import ParamMemory
from .responder import Responder
from .results import ResultPath
from .router import PayloadRouter
from .sequencer import Sequencer, vector_meta
from .wire import WORD_LAYOUT

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The lpmac GEMM accelerator with its packet protocol (docs/protocol.md).

    Parameters
    ----------
    config
        The `ArrayConfig`; the protocol needs stream_width 64 and rows, cols <= 8.
    multiplier
        PE multiplier variant (see `hw.pe`); `config.multiplier` when not given.

    Ports
    -----
    i_stream : In(stream.Signature(WORD_LAYOUT))
        Request packets: `data` a 64-bit word, `last` on the final word of each packet.
    o_stream : Out(stream.Signature(WORD_LAYOUT))
        Response packets, one per request, in request order.

    Throughput: the array takes one activation vector per cycle while a job runs, as long as
    the input stream delivers the next weight tile (R words) within an array pass (M_tile
    cycles) and the output stream takes the previous N-tile's results within an N-tile's
    compute time; `pass_min(mode)` is the shortest pass without bubbles. A command without
    payload (IDENTIFY, CLEAR_COUNTERS) is answered `command_latency` cycles after its word
    is accepted, when nothing is queued before it.
    """

    def __init__(self, config: ArrayConfig, *, multiplier: str | None = None) -> None:
        check_accelerator_config(config)
        self._config = config
        self._multiplier = config.multiplier if multiplier is None else multiplier
        super().__init__({
            "i_stream": In(stream.Signature(WORD_LAYOUT)),
            "o_stream": Out(stream.Signature(WORD_LAYOUT)),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def command_latency(self) -> int:
        """Cycles from accepting the only word of a command without payload (IDENTIFY,
        CLEAR_COUNTERS) to its response header on `o_stream` (nothing queued before it):
        decode, check, dispatch, execute, queue the response (a buffered FIFO: 2), output
        engine, output register."""
        return 8

    def pass_min(self, mode: str) -> int:
        """Shortest array pass (vectors per weight tile) the sequencer issues in `mode`;
        shorter M-tiles are padded with bubbles (`hw.accumulate.pass_min`)."""
        return accumulate.pass_min(self._config, mode)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        array = SystolicArray(config, multiplier=self._multiplier,
                              meta_shape=vector_meta(config))
        m.submodules.array = array
        # The engines (docs/architecture.md, "Accelerator").
        m.submodules.decoder = decoder = CommandDecoder(config)
        m.submodules.configure = configure = ConfigureUnit(config)
        m.submodules.router = router = PayloadRouter(config)
        m.submodules.sequencer = sequencer = Sequencer(config, array.activation_layout,
                                                       array.weight_layout)
        m.submodules.accumulation = accumulation = Accumulation(
            config, stream.Signature(array.output_layout))
        m.submodules.drain = drain = Drain(config)
        m.submodules.results = results = ResultPath(config, self._multiplier)
        m.submodules.responder = responder = Responder(config)
        m.submodules.counters = counters = PerformanceCounters(config)
        m.submodules.bank_uses = bank_uses = ActivationBankUses()
        m.submodules.acc_banks = acc_banks = AccumulatorBanks()
        m.submodules.job_fifo = job_fifo = SyncFIFOBuffered(width=1, depth=3)  # (2: 0-bit addr)

        # Commands in, responses out.
        if config.pipeline == "fast":
            # Registers between the link and the decoder: the link's `valid` and the
            # decoder's `ready` each stop at a register (the decoder's payload counters
            # then take their enable from registers next to them: an ECP5 critical path).
            m.submodules.command_skid = command_skid = SkidBuffer(WORD_LAYOUT)
            wiring.connect(m, wiring.flipped(self.i_stream), command_skid.i_stream)
            wiring.connect(m, command_skid.o_stream, decoder.i_stream)
        else:
            wiring.connect(m, wiring.flipped(self.i_stream), decoder.i_stream)
        wiring.connect(m, decoder.configure, configure.control)
        for engine in (decoder, router, sequencer, accumulation, drain, results):
            m.d.comb += engine.config.eq(configure.registers)
        wiring.connect(m, decoder.responses, responder.responses)
        wiring.connect(m, responder.o_stream, wiring.flipped(self.o_stream))
        m.d.comb += [responder.counters.eq(counters.words),
                     decoder.counters_sent.eq(responder.counters_sent)]

        # The jobs and the operands: decoder -> memories and FIFOs -> sequencer -> array.
        wiring.connect(m, decoder.jobs, job_fifo.w_stream)
        wiring.connect(m, job_fifo.r_stream, sequencer.jobs)
        if config.pipeline == "fast":
            # Registers between the decoder and the router: the link's `valid` then does not
            # reach the FIFOs' level logic in the same cycle (an ECP5 critical path).
            m.submodules.payload_skid = payload_skid = SkidBuffer(PAYLOAD_LAYOUT)
            wiring.connect(m, decoder.payload, payload_skid.i_stream)
            wiring.connect(m, payload_skid.o_stream, router.words)
        else:
            wiring.connect(m, decoder.payload, router.words)
        wiring.connect(m, router.weights, sequencer.weights_in)
        self._activation_memories(m, decoder, sequencer)
        wiring.connect(m, sequencer.vectors, array.a)
        wiring.connect(m, sequencer.weights, array.w)
        queued = decoder.jobs.valid & decoder.jobs.ready
        m.d.comb += [
            bank_uses.increment.eq(Mux(queued, Mux(decoder.jobs.payload, 0b10, 0b01), 0)),
            bank_uses.decrement.eq(sequencer.job_done),
            decoder.bank_idle.eq(bank_uses.idle),
        ]

        # The column sums: array -> accumulation <-> accumulator memories -> drain -> results.
        wiring.connect(m, array.out, accumulation.columns)
        if config.has_mx:
            wiring.connect(m, router.scales, accumulation.scales)
        self._accumulator_memories(m, decoder, accumulation, drain)
        m.d.comb += [
            acc_banks.claim.eq(sequencer.claim),
            acc_banks.claim_bank.eq(sequencer.claim_bank),
            acc_banks.claim_last.eq(sequencer.claim_last),
            acc_banks.written.eq(accumulation.written),
            acc_banks.written_bank.eq(accumulation.written_bank),
            acc_banks.release.eq(drain.release),
            acc_banks.release_bank.eq(drain.release_bank),
            sequencer.bank_busy.eq(acc_banks.busy),
            drain.full.eq(acc_banks.full),
            drain.last.eq(acc_banks.last),
            results.applied.eq(configure.applied),
        ]
        wiring.connect(m, drain.drained, results.drained)
        wiring.connect(m, results.results, responder.results)

        # Registered: only the decoder starts work, and it spends several cycles (header,
        # check, dispatch) between queueing one command and testing this for the next.
        all_idle = Signal()
        m.d.sync += all_idle.eq(
            ~sequencer.running & (job_fifo.level == 0) & (acc_banks.busy == 0)
            & ~accumulation.busy & ~drain.busy & ~results.busy & responder.idle)
        m.d.comb += decoder.all_idle.eq(all_idle)

        rows, cols = config.rows, config.cols
        accepted = array.a.valid & array.a.ready
        double = configure.registers.double_macs
        m.d.comb += [
            counters.busy.eq(accepted),
            counters.input_stall.eq(sequencer.input_stall),
            counters.output_stall.eq(sequencer.output_stall),
            counters.macs.eq(Mux(accepted, Mux(double, 2 * rows * cols, rows * cols), 0)),
            counters.clear.eq(decoder.clear_counters),
            counters.snapshot.eq(decoder.snapshot_counters),
        ]
        return m

    def _activation_memories(self, m: Module, decoder: CommandDecoder,
                             sequencer: Sequencer) -> None:
        """The activation buffer and, in MX builds, the activation-scale memory: written by
        the decoder, read by the sequencer."""
        config = self._config
        m.submodules.act_buffer = act_buffer = ActivationBuffer(config)
        m.d.comb += [
            act_buffer.w_addr.eq(decoder.act_write.addr),
            act_buffer.w_data.eq(decoder.act_write.data),
            act_buffer.w_en.eq(decoder.act_write.en),
            act_buffer.r_addr.eq(sequencer.act_read.addr),
            act_buffer.r_en.eq(sequencer.act_read.en),
            sequencer.act_read.data.eq(act_buffer.r_data),
        ]
        if config.has_mx:
            scale_mem = Memory(shape=unsigned(64), depth=2 * config.scale_bank_words, init=[])
            m.submodules.scale_mem = scale_mem
            wiring.connect(m, decoder.scale_write, scale_mem.write_port())
            wiring.connect(m, sequencer.scale_read, scale_mem.read_port())

    def _accumulator_memories(self, m: Module, decoder: CommandDecoder,
                              accumulation: Accumulation, drain: Drain) -> None:
        """The accumulator memory (and in MX builds the BFP memory): read-modify-written by
        the accumulation, read by the drain; the requantization memory, written by the
        decoder and read by the drain."""
        config = self._config
        acc_mem = Memory(shape=accumulator_row(config), depth=config.accumulator_depth,
                         init=[])
        m.submodules.acc_mem = acc_mem
        wiring.connect(m, accumulation.acc_write, acc_mem.write_port())
        wiring.connect(m, accumulation.acc_read, acc_mem.read_port())
        wiring.connect(m, drain.acc_read, acc_mem.read_port())
        if config.has_mx:
            bfp_mem = Memory(shape=bfp_row(config), depth=config.accumulator_depth, init=[])
            m.submodules.bfp_mem = bfp_mem
            wiring.connect(m, accumulation.bfp_write, bfp_mem.write_port())
            wiring.connect(m, accumulation.bfp_read, bfp_mem.read_port())
            wiring.connect(m, drain.bfp_read, bfp_mem.read_port())
        if config.has_requantizer:
            m.submodules.requant_mem = requant_mem = ParamMemory(config)
            wiring.connect(m, decoder.requant_write, requant_mem.write)
            wiring.connect(m, drain.requant_read, requant_mem.read)
