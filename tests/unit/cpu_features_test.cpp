#include "roam/cpu_features.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace roam {
namespace {

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// The kernel's view of this CPU, to check CPUID is read right.
std::vector<std::string> cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::vector<std::string> out;
      for (std::string w; words >> w;) out.push_back(w);
      return out;
    }
  return {};
}

TEST(CpuFeatures, HostAgreesWithProcCpuinfo) {
  auto host = host_cpu_features();
  auto flags = cpuinfo_flags();
  ASSERT_FALSE(flags.empty());
  auto names = feature_names(host);
  ASSERT_TRUE(has(names, "sse2"));  // every x86_64 CPU
  for (const char* f : {"sse4_2", "avx", "avx2", "avx512f", "avx512bw", "bmi2", "fma", "popcnt"}) {
    // The kernel may hide a feature it disabled; it never shows one CPUID lacks.
    if (has(flags, f)) {
      EXPECT_TRUE(has(names, f)) << f << " is in /proc/cpuinfo but not found by CPUID";
    }
  }
  if (has(flags, "avx")) {
    EXPECT_NE(host.xcr0 & 0x6, 0u) << "AVX enabled but XCR0 lacks SSE/AVX state";
  }
  EXPECT_GE(host.xsave_size, 576u);
}

TEST(CpuFeatures, SameCpuIsMissingNothing) {
  auto host = host_cpu_features();
  EXPECT_TRUE(missing_features(host, host).empty());
}

TEST(CpuFeatures, TargetLackingAvx512IsRefusedByName) {
  CpuFeatures home, target;
  home.leaf1_ecx = target.leaf1_ecx = (1u << 28);  // avx
  home.leaf7_ebx = (1u << 16) | (1u << 5);        // avx512f avx2
  target.leaf7_ebx = (1u << 5);                   // avx2 only
  home.xcr0 = 0xe7;
  target.xcr0 = 0x07;
  auto m = missing_features(home, target);
  EXPECT_TRUE(has(m, "avx512f"));
  EXPECT_TRUE(has(m, "xcr0:opmask"));
  EXPECT_TRUE(has(m, "xcr0:zmm_hi256"));
  EXPECT_FALSE(has(m, "avx2"));
  // The other way round is fine: more features at the target never hurt.
  EXPECT_TRUE(missing_features(target, home).empty());
}

TEST(CpuFeatures, UnnamedBitsStillCount) {
  CpuFeatures home, target;
  home.leaf7_ecx = 1u << 31;
  auto m = missing_features(home, target);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], "cpuid.7.ecx bit 31");
}

TEST(CpuFeatures, StateBitsDoNotBlock) {
  CpuFeatures home, target;
  home.leaf1_ecx = (1u << 27) | (1u << 31);  // osxsave, hypervisor
  EXPECT_TRUE(missing_features(home, target).empty());
}

TEST(CpuFeatures, LargerXsaveAreaIsRefused) {
  CpuFeatures home, target;
  home.xsave_size = 2696;
  target.xsave_size = 832;
  auto m = missing_features(home, target);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_NE(m[0].find("xsave area"), std::string::npos);
}

TEST(CpuFeatures, WireRoundTrip) {
  auto host = host_cpu_features();
  wire::Writer w;
  host.encode(w);
  auto bytes = w.take();
  wire::Reader r(bytes);
  EXPECT_EQ(CpuFeatures::decode(r), host);
  wire::Reader short_reader(std::span<const std::byte>(bytes).first(bytes.size() - 1));
  EXPECT_THROW(CpuFeatures::decode(short_reader), wire::DecodeError);
}

}  // namespace
}  // namespace roam

TEST(CpuFeatures, WithheldFeatureIsMissingByName) {
  roam::CpuFeatures home = roam::host_cpu_features();
  roam::CpuFeatures target = home;
  ASSERT_TRUE(roam::withhold_feature(target, "sse2"));  // every x86_64 CPU has it
  EXPECT_FALSE(roam::withhold_feature(target, "no-such-feature"));
  std::vector<std::string> missing = roam::missing_features(home, target);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0], "sse2");
  EXPECT_TRUE(roam::missing_features(target, home).empty());
}
