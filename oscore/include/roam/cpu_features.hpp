// The CPU features a process may have started using at its home node. glibc
// (and many programs) pick their code paths once, at start-up, from CPUID and
// XCR0; a body moved to a node whose CPU or kernel lacks one of those would die
// with SIGILL later. So a move is refused unless the target has every feature
// of the home, and the refusal names the missing feature.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "roam/wire.hpp"

namespace roam {

struct CpuFeatures {
  // Raw CPUID words, so that a feature this code does not name still counts.
  uint32_t leaf1_ecx = 0, leaf1_edx = 0;
  uint32_t leaf7_ebx = 0, leaf7_ecx = 0, leaf7_edx = 0;
  uint32_t leaf7_1_eax = 0;
  uint32_t ext1_ecx = 0, ext1_edx = 0;  // 0x80000001
  uint32_t leafd_1_eax = 0;             // xsaveopt, xsavec, xgetbv1, xsaves
  uint64_t xcr0 = 0;                    // state components the OS enabled
  uint32_t xsave_size = 0;              // bytes of the enabled xstate (CPUID 0xD.0 ebx)

  void encode(wire::Writer& w) const;
  static CpuFeatures decode(wire::Reader& r);
  bool operator==(const CpuFeatures&) const = default;
};

// This CPU, from CPUID and XGETBV.
CpuFeatures host_cpu_features();

// Names of the features `home` has and `target` lacks ("avx512f", "xcr0:opmask",
// or "cpuid.7.ebx bit 30" for one without a name). Empty: the move is safe.
std::vector<std::string> missing_features(const CpuFeatures& home, const CpuFeatures& target);

// Treats the named feature as absent (a node tagged cpu-lacks:NAME in the
// cluster map: an admin keeps jobs that use it away). False for an unknown name.
bool withhold_feature(CpuFeatures& f, std::string_view name);

// The named features present, for display ("sse4_2 avx avx2 ...").
std::vector<std::string> feature_names(const CpuFeatures& f);

}  // namespace roam
