// Board-top simulation: fpga.top.BridgedAccelerator on Verilator behind a pseudo-terminal.
//
// The harness opens a pseudo-terminal (posix_openpt, grantpt, unlockpt, ptsname; raw mode),
// prints "PTY <path>" on stdout and then moves bytes between the pty and the design's UART
// pins bit by bit: bytes the host writes to <path> are sent into `rx` as 8N1 characters of
// `--divisor` clock cycles per bit, and characters the design sends on `tx` are sampled at
// the middle of each bit and written back to the pty. A host program opens <path> like a
// USB serial adapter (fpga/boardsim.py starts this program and `host.serial_transport`
// talks to it).
//
// Line faults (seeded, splitmix64): each byte, in either direction, is dropped with
// probability --drop-prob or has one random bit flipped with probability --flip-prob, at
// most --max-faults in total (default: no limit) and at least --fault-gap bytes (both
// directions counted) after the previous fault. Every fault is reported at once on stdout:
//     FAULT <h2d|d2h> <drop|flip> byte <n> [bit <b>]
// (n counts the bytes of that direction from 0). On exit (SIGTERM, SIGINT or end of stdin)
// the harness prints "SUMMARY flips <f> drops <d> cycles <c>" and exits with status 0.
//
// Time: the design runs freely while anything moves; after --idle-cycles cycles in which no
// byte moved in either direction (longer than the bridge's frame timeout, so a pending NAK
// is always sent first) the simulation waits for the host without advancing the clock.

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <poll.h>
#include <string>
#include <termios.h>
#include <unistd.h>
#include <vector>

#include "Vbridged_accelerator.h"
#include "splitmix64.h"
#include "verilated.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr, "boardsim harness: %s\n", message);
    std::fprintf(stderr,
                 "usage: boardsim --divisor D [--seed S] [--flip-prob P] [--drop-prob P] "
                 "[--max-faults N] [--fault-gap G] [--idle-cycles C]\n");
    std::exit(2);
}

struct Options {
    long divisor = 0;
    uint64_t seed = 1;
    double flip_prob = 0.0;
    double drop_prob = 0.0;
    long max_faults = -1;
    long fault_gap = 1024;
    long idle_cycles = 200000;
};

double parse_double(const char* text, const char* name) {
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || value < 0.0 || value > 1.0) {
        std::string message = std::string(name) + " must be a probability from 0 to 1";
        usage(message.c_str());
    }
    return value;
}

long parse_long(const char* text, const char* name, long minimum) {
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < minimum) {
        std::string message = std::string(name) + " must be an integer of at least " +
                              std::to_string(minimum);
        usage(message.c_str());
    }
    return value;
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.rfind("+verilator", 0) == 0) continue;
        if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
        const char* value = argv[++i];
        if (arg == "--divisor") options.divisor = parse_long(value, "--divisor", 4);
        else if (arg == "--seed") options.seed = std::strtoull(value, nullptr, 10);
        else if (arg == "--flip-prob") options.flip_prob = parse_double(value, "--flip-prob");
        else if (arg == "--drop-prob") options.drop_prob = parse_double(value, "--drop-prob");
        else if (arg == "--max-faults") options.max_faults = parse_long(value, "--max-faults", -1);
        else if (arg == "--fault-gap") options.fault_gap = parse_long(value, "--fault-gap", 0);
        else if (arg == "--idle-cycles") options.idle_cycles = parse_long(value, "--idle-cycles", 1);
        else usage(("unknown option " + arg).c_str());
    }
    if (options.divisor == 0) usage("--divisor is required");
    return options;
}

// Decides the fault of each byte crossing the line, in both directions.
class FaultInjector {
public:
    explicit FaultInjector(const Options& options)
        : options_(options), rng_{options.seed}, since_fault_(options.fault_gap) {}

    // Returns false when the byte is dropped; may flip one bit of `byte`.
    bool pass(const char* direction, uint64_t index, uint8_t& byte) {
        bool eligible = since_fault_ >= options_.fault_gap &&
                        (options_.max_faults < 0 || faults() < options_.max_faults);
        ++since_fault_;
        if (!eligible || (options_.drop_prob == 0.0 && options_.flip_prob == 0.0)) return true;
        double draw = rng_.uniform();
        if (draw < options_.drop_prob) {
            ++drops_;
            since_fault_ = 0;
            std::printf("FAULT %s drop byte %llu\n", direction,
                        static_cast<unsigned long long>(index));
            std::fflush(stdout);
            return false;
        }
        if (draw < options_.drop_prob + options_.flip_prob) {
            int bit = static_cast<int>(rng_.next() % 8);
            byte ^= static_cast<uint8_t>(1u << bit);
            ++flips_;
            since_fault_ = 0;
            std::printf("FAULT %s flip byte %llu bit %d\n", direction,
                        static_cast<unsigned long long>(index), bit);
            std::fflush(stdout);
        }
        return true;
    }
    long faults() const { return flips_ + drops_; }
    long flips() const { return flips_; }
    long drops() const { return drops_; }

private:
    const Options& options_;
    SplitMix64 rng_;
    long since_fault_;
    long flips_ = 0, drops_ = 0;
};

// 8N1 transmitter driving the design's rx pin from a byte queue.
class LineDriver {
public:
    explicit LineDriver(long divisor) : divisor_(divisor) {}
    std::deque<uint8_t> queue;
    // The line level for the coming cycle.
    int step() {
        if (bits_left_ == 0) {
            if (queue.empty()) return 1;
            shift_ = (1u << 9) | (static_cast<unsigned>(queue.front()) << 1);  // stop,data,start
            queue.pop_front();
            bits_left_ = 10;
            timer_ = divisor_;
        }
        int level = shift_ & 1;
        if (--timer_ == 0) {
            shift_ >>= 1;
            --bits_left_;
            timer_ = divisor_;
        }
        return level;
    }
    bool idle() const { return bits_left_ == 0 && queue.empty(); }

private:
    long divisor_;
    unsigned shift_ = 0x3FF;
    int bits_left_ = 0;
    long timer_ = 0;
};

// 8N1 receiver sampling the design's tx pin.
class LineSampler {
public:
    explicit LineSampler(long divisor) : divisor_(divisor) {}
    // Feed the level after a clock edge; returns true with `byte` set when a character ends.
    bool step(int level, uint8_t& byte, bool& framing_error) {
        if (!active_) {
            if (level == 0) {
                active_ = true;
                timer_ = divisor_ / 2;   // to the middle of the start bit
                bit_ = -1;
            }
            return false;
        }
        if (--timer_ > 0) return false;
        timer_ = divisor_;
        if (bit_ < 0) {
            if (level != 0) active_ = false;   // glitch
            bit_ = 0;
            value_ = 0;
            return false;
        }
        if (bit_ < 8) {
            value_ |= static_cast<unsigned>(level) << bit_;
            ++bit_;
            return false;
        }
        active_ = false;
        framing_error = level == 0;
        byte = static_cast<uint8_t>(value_);
        return true;
    }
    bool idle() const { return !active_; }

private:
    long divisor_;
    bool active_ = false;
    int bit_ = 0;
    long timer_ = 0;
    unsigned value_ = 0;
};

int open_pty(std::string& name, int& slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        std::perror("boardsim harness: cannot create a pseudo-terminal");
        std::exit(1);
    }
    const char* path = ptsname(master);
    if (path == nullptr) {
        std::perror("boardsim harness: ptsname");
        std::exit(1);
    }
    name = path;
    // Keep one slave descriptor open so the master never sees a hang-up between host
    // sessions, and put the line in raw mode (no echo, no line editing, 8 bits).
    slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0) {
        std::perror("boardsim harness: cannot open the pty slave");
        std::exit(1);
    }
    termios settings{};
    tcgetattr(slave, &settings);
    cfmakeraw(&settings);
    tcsetattr(slave, TCSANOW, &settings);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    return master;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    std::string pty_name;
    int slave = -1;
    int master = open_pty(pty_name, slave);

    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vbridged_accelerator>(context.get(), "top");

    FaultInjector faults(options);
    LineDriver driver(options.divisor);
    LineSampler sampler(options.divisor);
    std::vector<uint8_t> to_host;
    uint64_t h2d_index = 0, d2h_index = 0, cycles = 0;
    long quiet = 0;

    top->rx = 1;
    top->clk = 0;
    top->rst = 1;
    top->eval();
    for (int edge = 0; edge < 2; ++edge) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }
    top->rst = 0;
    top->eval();

    std::printf("PTY %s\n", pty_name.c_str());
    std::fflush(stdout);

    bool stdin_open = true;
    uint8_t buffer[4096];
    while (!g_stop && stdin_open) {
        // Move bytes to and from the pty every 64 cycles (far less than a character time
        // at the divisors used in simulation, 80 cycles and more).
        if ((cycles & 63) == 0) {
            if (!to_host.empty()) {
                ssize_t written = write(master, to_host.data(), to_host.size());
                if (written > 0) to_host.erase(to_host.begin(), to_host.begin() + written);
            }
            if (driver.queue.size() < 64) {
                ssize_t count = read(master, buffer, sizeof buffer);
                for (ssize_t i = 0; i < count; ++i) {
                    uint8_t byte = buffer[i];
                    if (faults.pass("h2d", h2d_index++, byte)) driver.queue.push_back(byte);
                    quiet = 0;
                }
            }
            if ((cycles & 0xFFFF) == 0) {
                pollfd input{0, POLLIN, 0};
                if (poll(&input, 1, 0) > 0 && (input.revents & (POLLIN | POLLHUP))) {
                    ssize_t count = read(0, buffer, sizeof buffer);
                    if (count <= 0) stdin_open = false;
                }
            }
            if (quiet >= options.idle_cycles && driver.idle() && sampler.idle() &&
                to_host.empty()) {
                // Nothing can happen until the host writes: wait for it (or for stdin).
                pollfd waiting[2] = {{master, POLLIN, 0}, {0, POLLIN, 0}};
                int ready = poll(waiting, 2, 50);
                if (ready > 0 && (waiting[1].revents & (POLLIN | POLLHUP))) {
                    ssize_t count = read(0, buffer, sizeof buffer);
                    if (count <= 0) stdin_open = false;
                }
                if (!(ready > 0 && (waiting[0].revents & POLLIN))) continue;
                quiet = 0;
            }
        }
        top->rx = driver.step();
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        ++cycles;
        ++quiet;
        uint8_t byte = 0;
        bool framing_error = false;
        if (sampler.step(top->tx, byte, framing_error)) {
            quiet = 0;
            if (framing_error) {
                std::printf("NOTE d2h framing error byte %llu\n",
                            static_cast<unsigned long long>(d2h_index));
                std::fflush(stdout);
            }
            if (faults.pass("d2h", d2h_index++, byte)) to_host.push_back(byte);
        }
        if (!driver.idle() || !sampler.idle()) quiet = 0;
    }
    top->final();
    std::printf("SUMMARY flips %ld drops %ld cycles %llu\n", faults.flips(), faults.drops(),
                static_cast<unsigned long long>(cycles));
    std::fflush(stdout);
    close(slave);
    close(master);
    return 0;
}
