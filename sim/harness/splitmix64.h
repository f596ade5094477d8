// splitmix64 (Steele, Lea and Flood, 2014): a fast 64-bit generator that gives the same
// sequence on every platform, for the Verilator harnesses' seeded stalls and line faults.
#pragma once

#include <cstdint>

struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    // A double uniform in [0, 1), from the top 53 bits of one draw.
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
};
