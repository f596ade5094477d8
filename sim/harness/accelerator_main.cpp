// Verilator harness of hw.accelerator.Accelerator: clocks the model and moves the protocol
// beats of its two streams, talking to the host through stdin / stdout in batches
// (sim/fastsim.py is the other end). No Python runs per clock cycle.
//
// The model is `harness_top` (sim/fastsim.py writes it around the accelerator's Verilog): the
// accelerator with its synchronous reset driven from a flip-flop, whose input is the port
// `rst_request`. With `rst` a primary input, Verilator evaluates all reset-dependent next-state
// logic (nearly every register's) in its input-combinational region, on every eval; behind the
// flip-flop it is evaluated once per clock edge, which makes the simulation about 10% faster.
// A reset therefore takes one edge more than the accelerator sees `rst` high.
//
// Pipe protocol (all integers little-endian)
// ------------------------------------------
// On start the harness resets the design (`rst` high at 2 rising edges) and writes the hello:
//     char magic[8] = "LPMACSIM"; u32 version (1); u32 reserved (0)
// Then it serves requests, each a 16-byte header
//     u32 command; u32 count; u64 budget
// and, for EXCHANGE, `count` u64 words followed by `count` u8 `last` flags.
//   EXCHANGE (1): present the words on i_stream, in order (each held until accepted), and
//     collect o_stream beats until every word was accepted and as many response packets
//     (beats with `last`) came back as the words hold `last` flags. Fails with TIMEOUT
//     after `budget` rising edges (the remaining words are dropped).
//   RESET (2): `rst` high at `count` rising edges (at least 1), both streams idle; it takes
//     `count` + 1 edges (the first one loads the reset flip-flop).
//   QUIT (3): exit with status 0 without answering.
// Every EXCHANGE and RESET is answered with a 40-byte header
//     u32 status (0 OK, 1 TIMEOUT); u32 count; u64 cycles; u64 total_cycles;
//     u64 accepted; u64 reserved
// then `count` u64 words and `count` u8 flags of the response beats (on TIMEOUT, those
// that arrived). `cycles` are the rising edges of this request, `total_cycles` every edge
// since the process started, `accepted` the request words the design took.
//
// Timing: the design is evaluated only around rising edges. Between requests it rests with
// clk low, so no cycle passes outside a request, and the cycles of an exchange run from the
// edge that can take its first word to the edge that transfers its last response beat.
//
// Options: --gaps P (probability of leaving i_stream.valid low in a cycle in which a new
// word could be presented), --stalls P (probability of ready low on o_stream in a cycle),
// --seed S (of both, a splitmix64 generator). Default 0, 0, 1: full throughput.
// --coverage-file PATH (only in a model built with Verilator's coverage, `sim.coverage`):
// write the coverage counters there when the harness exits normally (QUIT or the host
// closing the pipe); a model built without coverage refuses the option.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "Vharness_top.h"
#include "splitmix64.h"
#include "verilated.h"
#if VM_COVERAGE
#include "verilated_cov.h"
#endif

namespace {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kExchange = 1, kReset = 2, kQuit = 3;
constexpr uint32_t kOk = 0, kTimeout = 1;
constexpr uint32_t kStartupResetCycles = 2;

int g_protocol_out = -1;  // the host's pipe (stdout moved away from the design's $display)

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "accelerator harness: %s\n", what);
    std::exit(2);
}

// Read exactly `size` bytes; false on a clean end of input before the first byte.
bool read_all(void* buffer, size_t size) {
    auto* bytes = static_cast<uint8_t*>(buffer);
    size_t done = 0;
    while (done < size) {
        ssize_t got = ::read(0, bytes + done, size - done);
        if (got == 0) {
            if (done == 0) return false;
            fail("the host closed the pipe in the middle of a request");
        }
        if (got < 0) {
            if (errno == EINTR) continue;
            fail("reading the request failed");
        }
        done += static_cast<size_t>(got);
    }
    return true;
}

void write_all(const void* buffer, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(buffer);
    while (size > 0) {
        ssize_t put = ::write(g_protocol_out, bytes, size);
        if (put < 0) {
            if (errno == EINTR) continue;
            std::exit(3);  // the host went away: nothing left to tell it
        }
        bytes += put;
        size -= static_cast<size_t>(put);
    }
}

// A probability as a threshold on a 64-bit draw (0 never pauses and draws nothing).
uint64_t threshold(double probability) {
    if (!(probability >= 0.0 && probability < 1.0)) fail("a probability must be in [0, 1)");
    return static_cast<uint64_t>(probability * 18446744073709551616.0);
}

struct Answer {
    uint32_t status = kOk;
    uint64_t cycles = 0;
    uint64_t accepted = 0;
    std::vector<uint64_t> words;
    std::vector<uint8_t> lasts;
};

class Harness {
  public:
    Harness(uint64_t gap_threshold, uint64_t stall_threshold, uint64_t seed)
        : context_(new VerilatedContext), top_(new Vharness_top(context_.get(), "top")),
          gap_threshold_(gap_threshold), stall_threshold_(stall_threshold), random_{seed} {
        top_->clk = 0;
        top_->rst_request = 0;
        top_->i_stream___05Fvalid = 0;
        top_->o_stream___05Fready = 0;
        top_->eval();
    }

    ~Harness() {
        top_->final();
#if VM_COVERAGE
        if (!coverage_file_.empty()) context_->coveragep()->write(coverage_file_);
#endif
    }

    void set_coverage_file(const std::string& path) { coverage_file_ = path; }

    uint64_t total_cycles() const { return total_cycles_; }

    // `rst` high at `edges` rising edges, then low (like sim.cocotb_streams.reset_dut): the
    // request is high for `edges` edges and low for one more, which loads the low level into
    // the reset flip-flop, so the design is out of reset when the next request begins.
    Answer reset(uint32_t edges) {
        Answer answer;
        if (edges == 0) edges = 1;
        top_->rst_request = 1;
        top_->i_stream___05Fvalid = 0;
        top_->o_stream___05Fready = 0;
        top_->eval();
        for (uint32_t edge = 0; edge <= edges; ++edge) {
            rising_edge();
            ++answer.cycles;
            top_->clk = 0;
            if (edge + 1 == edges) top_->rst_request = 0;
            top_->eval();
        }
        return answer;
    }

    Answer exchange(const std::vector<uint64_t>& words, const std::vector<uint8_t>& lasts,
                    uint64_t budget) {
        Answer answer;
        const size_t count = words.size();
        uint64_t packets = 0;
        for (uint8_t last : lasts) packets += last ? 1 : 0;
        uint64_t answered = 0;
        size_t next = 0;          // index of the next word to present
        bool presented = false;   // a word is on i_stream (valid high)
        auto& in_payload = top_->i_stream___05Fpayload;
        const auto& out_payload = top_->o_stream___05Fpayload;

        // Inputs for the first edge.
        auto present_next = [&]() {
            if (!presented && next < count && !pause(gap_threshold_)) {
                in_payload[0] = static_cast<uint32_t>(words[next]);
                in_payload[1] = static_cast<uint32_t>(words[next] >> 32);
                in_payload[2] = lasts[next] ? 1 : 0;
                presented = true;
            }
            top_->i_stream___05Fvalid = presented ? 1 : 0;
            top_->o_stream___05Fready = pause(stall_threshold_) ? 0 : 1;
        };
        if (count == 0) return answer;
        present_next();
        top_->eval();
        while (true) {
            if (answer.cycles >= budget) {
                answer.status = kTimeout;
                break;
            }
            // Sample what the coming edge transfers (clk low, inputs settled).
            const bool taken = presented && top_->i_stream___05Fready;
            const bool delivered = top_->o_stream___05Fvalid && top_->o_stream___05Fready;
            if (delivered) {
                answer.words.push_back(static_cast<uint64_t>(out_payload[0])
                                       | static_cast<uint64_t>(out_payload[1]) << 32);
                const uint8_t last = out_payload[2] & 1;
                answer.lasts.push_back(last);
                answered += last;
            }
            rising_edge();
            ++answer.cycles;
            if (taken) {
                presented = false;
                ++next;
            }
            const bool done = next == count && answered >= packets;
            if (done) {
                top_->i_stream___05Fvalid = 0;
                top_->o_stream___05Fready = 0;
            } else {
                present_next();
            }
            top_->clk = 0;
            top_->eval();
            if (done) break;
        }
        if (answer.status == kTimeout) {  // leave the stream idle, the rest dropped
            top_->i_stream___05Fvalid = 0;
            top_->o_stream___05Fready = 0;
            top_->eval();
        }
        answer.accepted = next;
        return answer;
    }

  private:
    void rising_edge() {
        top_->clk = 1;
        top_->eval();
        ++total_cycles_;
    }

    bool pause(uint64_t limit) { return limit != 0 && random_.next() < limit; }

    std::unique_ptr<VerilatedContext> context_;
    std::unique_ptr<Vharness_top> top_;
    uint64_t gap_threshold_, stall_threshold_;
    SplitMix64 random_;
    uint64_t total_cycles_ = 0;
    std::string coverage_file_;
};

void send(const Answer& answer, uint64_t total_cycles) {
    uint8_t header[40] = {};
    const uint32_t count = static_cast<uint32_t>(answer.words.size());
    const uint64_t reserved = 0;
    std::memcpy(header + 0, &answer.status, 4);
    std::memcpy(header + 4, &count, 4);
    std::memcpy(header + 8, &answer.cycles, 8);
    std::memcpy(header + 16, &total_cycles, 8);
    std::memcpy(header + 24, &answer.accepted, 8);
    std::memcpy(header + 32, &reserved, 8);
    write_all(header, sizeof header);
    write_all(answer.words.data(), answer.words.size() * 8);
    write_all(answer.lasts.data(), answer.lasts.size());
}

double probability_argument(const char* text) {
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end != '\0') fail("--gaps and --stalls take a number");
    return value;
}

}  // namespace

int main(int argc, char** argv) {
    double gaps = 0.0, stalls = 0.0;
    uint64_t seed = 1;
    std::string coverage_file;
    for (int index = 1; index < argc; ++index) {
        const std::string option = argv[index];
        if (index + 1 >= argc) fail(("option " + option + " needs a value").c_str());
        const char* value = argv[++index];
        if (option == "--gaps") gaps = probability_argument(value);
        else if (option == "--stalls") stalls = probability_argument(value);
        else if (option == "--seed") seed = std::strtoull(value, nullptr, 0);
        else if (option == "--coverage-file") coverage_file = value;
        else fail(("unknown option " + option).c_str());
    }
    // The protocol keeps stdout to itself; anything the design prints goes to stderr.
    g_protocol_out = ::dup(1);
    if (g_protocol_out < 0 || ::dup2(2, 1) < 0) fail("cannot set up the output pipe");

#if !VM_COVERAGE
    if (!coverage_file.empty()) fail("--coverage-file needs a model built with coverage");
#endif
    Harness harness(threshold(gaps), threshold(stalls), seed);
    harness.set_coverage_file(coverage_file);
    harness.reset(kStartupResetCycles);
    const char magic[8] = {'L', 'P', 'M', 'A', 'C', 'S', 'I', 'M'};
    uint8_t hello[16] = {};
    std::memcpy(hello, magic, 8);
    std::memcpy(hello + 8, &kVersion, 4);
    write_all(hello, sizeof hello);

    std::vector<uint64_t> words;
    std::vector<uint8_t> lasts;
    while (true) {
        uint8_t header[16];
        if (!read_all(header, sizeof header)) break;  // the host closed the pipe: done
        uint32_t command, count;
        uint64_t budget;
        std::memcpy(&command, header, 4);
        std::memcpy(&count, header + 4, 4);
        std::memcpy(&budget, header + 8, 8);
        if (command == kQuit) break;
        if (command == kReset) {
            const Answer answer = harness.reset(count);
            send(answer, harness.total_cycles());
        } else if (command == kExchange) {
            words.resize(count);
            lasts.resize(count);
            if (count && (!read_all(words.data(), count * 8ULL) || !read_all(lasts.data(), count)))
                fail("the host closed the pipe in the middle of a request");
            const Answer answer = harness.exchange(words, lasts, budget);
            send(answer, harness.total_cycles());
        } else {
            fail("unknown command from the host");
        }
    }
    return 0;
}
