#include "roam/cpu_features.hpp"

#include <cpuid.h>

#include <fmt/format.h>

namespace roam {
namespace {

enum class Word { l1c, l1d, l7b, l7c, l7d, l71a, e1c, e1d, ld1a, xcr0 };

struct Named {
  Word word;
  int bit;
  const char* name;
};

// Names as in /proc/cpuinfo. Every bit of the words is compared, named or not.
constexpr Named kNames[] = {
    {Word::l1d, 25, "sse"},         {Word::l1d, 26, "sse2"},        {Word::l1c, 0, "pni"},
    {Word::l1c, 1, "pclmulqdq"},    {Word::l1c, 9, "ssse3"},        {Word::l1c, 12, "fma"},
    {Word::l1c, 13, "cx16"},        {Word::l1c, 19, "sse4_1"},      {Word::l1c, 20, "sse4_2"},
    {Word::l1c, 22, "movbe"},       {Word::l1c, 23, "popcnt"},      {Word::l1c, 25, "aes"},
    {Word::l1c, 26, "xsave"},       {Word::l1c, 28, "avx"},         {Word::l1c, 29, "f16c"},
    {Word::l1c, 30, "rdrand"},      {Word::l7b, 3, "bmi1"},         {Word::l7b, 5, "avx2"},
    {Word::l7b, 8, "bmi2"},         {Word::l7b, 9, "erms"},         {Word::l7b, 16, "avx512f"},
    {Word::l7b, 17, "avx512dq"},    {Word::l7b, 18, "rdseed"},      {Word::l7b, 19, "adx"},
    {Word::l7b, 21, "avx512ifma"},  {Word::l7b, 26, "avx512pf"},    {Word::l7b, 27, "avx512er"},
    {Word::l7b, 28, "avx512cd"},    {Word::l7b, 29, "sha_ni"},      {Word::l7b, 30, "avx512bw"},
    {Word::l7b, 31, "avx512vl"},    {Word::l7c, 1, "avx512vbmi"},   {Word::l7c, 6, "avx512_vbmi2"},
    {Word::l7c, 8, "gfni"},         {Word::l7c, 9, "vaes"},         {Word::l7c, 10, "vpclmulqdq"},
    {Word::l7c, 11, "avx512_vnni"}, {Word::l7c, 12, "avx512_bitalg"}, {Word::l7c, 14, "avx512_vpopcntdq"},
    {Word::l7c, 22, "rdpid"},       {Word::l7d, 4, "fsrm"},         {Word::l7d, 8, "avx512_vp2intersect"},
    {Word::l7d, 22, "amx_bf16"},    {Word::l7d, 23, "avx512_fp16"}, {Word::l7d, 24, "amx_tile"},
    {Word::l7d, 25, "amx_int8"},    {Word::l71a, 4, "avx_vnni"},    {Word::l71a, 5, "avx512_bf16"},
    {Word::e1c, 0, "lahf_lm"},      {Word::e1c, 5, "abm"},          {Word::e1c, 6, "sse4a"},
    {Word::e1c, 8, "3dnowprefetch"}, {Word::e1c, 16, "fma4"},       {Word::e1d, 27, "rdtscp"},
    {Word::ld1a, 0, "xsaveopt"},    {Word::ld1a, 1, "xsavec"},      {Word::ld1a, 3, "xsaves"},
    {Word::xcr0, 1, "xcr0:sse"},    {Word::xcr0, 2, "xcr0:avx"},    {Word::xcr0, 5, "xcr0:opmask"},
    {Word::xcr0, 6, "xcr0:zmm_hi256"}, {Word::xcr0, 7, "xcr0:hi16_zmm"}, {Word::xcr0, 17, "xcr0:amx_tilecfg"},
    {Word::xcr0, 18, "xcr0:amx_tiledata"},
};

uint64_t word_of(const CpuFeatures& f, Word w) {
  switch (w) {
    case Word::l1c: return f.leaf1_ecx;
    case Word::l1d: return f.leaf1_edx;
    case Word::l7b: return f.leaf7_ebx;
    case Word::l7c: return f.leaf7_ecx;
    case Word::l7d: return f.leaf7_edx;
    case Word::l71a: return f.leaf7_1_eax;
    case Word::e1c: return f.ext1_ecx;
    case Word::e1d: return f.ext1_edx;
    case Word::ld1a: return f.leafd_1_eax;
    case Word::xcr0: return f.xcr0;
  }
  return 0;
}

const char* word_label(Word w) {
  switch (w) {
    case Word::l1c: return "cpuid.1.ecx";
    case Word::l1d: return "cpuid.1.edx";
    case Word::l7b: return "cpuid.7.ebx";
    case Word::l7c: return "cpuid.7.ecx";
    case Word::l7d: return "cpuid.7.edx";
    case Word::l71a: return "cpuid.7.1.eax";
    case Word::e1c: return "cpuid.80000001.ecx";
    case Word::e1d: return "cpuid.80000001.edx";
    case Word::ld1a: return "cpuid.d.1.eax";
    case Word::xcr0: return "xcr0";
  }
  return "?";
}

// Bits that describe the CPU's current state or are not features at all, and
// must not block a move: OSXSAVE mirrors CR4 (compared through xcr0 instead),
// the APIC id and hypervisor bits differ between identical machines.
uint64_t ignored_bits(Word w) {
  switch (w) {
    case Word::l1c: return (1ull << 27) /* osxsave */ | (1ull << 31) /* hypervisor */ | (1ull << 21) /* x2apic */;
    case Word::l1d: return (1ull << 9) /* apic */;
    default: return 0;
  }
}

constexpr Word kWords[] = {Word::l1c, Word::l1d, Word::l7b, Word::l7c, Word::l7d,
                           Word::l71a, Word::e1c, Word::e1d, Word::ld1a, Word::xcr0};

}  // namespace

void CpuFeatures::encode(wire::Writer& w) const {
  for (uint32_t v : {leaf1_ecx, leaf1_edx, leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax, ext1_ecx, ext1_edx, leafd_1_eax})
    w.u32(v);
  w.u64(xcr0);
  w.u32(xsave_size);
}

CpuFeatures CpuFeatures::decode(wire::Reader& r) {
  CpuFeatures f;
  for (uint32_t* v : {&f.leaf1_ecx, &f.leaf1_edx, &f.leaf7_ebx, &f.leaf7_ecx, &f.leaf7_edx, &f.leaf7_1_eax, &f.ext1_ecx,
                      &f.ext1_edx, &f.leafd_1_eax})
    *v = r.u32();
  f.xcr0 = r.u64();
  f.xsave_size = r.u32();
  return f;
}

CpuFeatures host_cpu_features() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    f.leaf1_ecx = c;
    f.leaf1_edx = d;
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.leaf7_ebx = b;
    f.leaf7_ecx = c;
    f.leaf7_edx = d;
    unsigned sub = a;
    if (sub >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.leaf7_1_eax = a;
    }
  }
  if (max_leaf >= 0xd) {
    __cpuid_count(0xd, 1, a, b, c, d);
    f.leafd_1_eax = a;
    __cpuid_count(0xd, 0, a, b, c, d);
    f.xsave_size = b;
  }
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000, nullptr)) >= 0x80000001u) {
    __get_cpuid(0x80000001, &a, &b, &c, &d);
    f.ext1_ecx = c;
    f.ext1_edx = d;
  }
  if (f.leaf1_ecx & (1u << 27)) {  // OSXSAVE: XGETBV is allowed
    uint32_t lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  return f;
}

std::vector<std::string> missing_features(const CpuFeatures& home, const CpuFeatures& target) {
  std::vector<std::string> out;
  for (Word w : kWords) {
    uint64_t lacking = word_of(home, w) & ~word_of(target, w) & ~ignored_bits(w);
    for (int bit = 0; bit < 64 && lacking; ++bit) {
      if (!(lacking & (1ull << bit))) continue;
      lacking &= ~(1ull << bit);
      const char* name = nullptr;
      for (auto& n : kNames)
        if (n.word == w && n.bit == bit) name = n.name;
      out.push_back(name ? name : fmt::format("{} bit {}", word_label(w), bit));
    }
  }
  // A larger xstate than the target's kernel enables cannot be restored there.
  if (home.xsave_size > target.xsave_size && out.empty())
    out.push_back(fmt::format("xsave area of {} bytes (target: {})", home.xsave_size, target.xsave_size));
  return out;
}

std::vector<std::string> feature_names(const CpuFeatures& f) {
  std::vector<std::string> out;
  for (auto& n : kNames)
    if (word_of(f, n.word) & (1ull << n.bit)) out.push_back(n.name);
  return out;
}

bool withhold_feature(CpuFeatures& f, std::string_view name) {
  for (auto& n : kNames) {
    if (name != n.name) continue;
    uint64_t bit = 1ull << n.bit;
    switch (n.word) {
      case Word::l1c: f.leaf1_ecx &= ~static_cast<uint32_t>(bit); break;
      case Word::l1d: f.leaf1_edx &= ~static_cast<uint32_t>(bit); break;
      case Word::l7b: f.leaf7_ebx &= ~static_cast<uint32_t>(bit); break;
      case Word::l7c: f.leaf7_ecx &= ~static_cast<uint32_t>(bit); break;
      case Word::l7d: f.leaf7_edx &= ~static_cast<uint32_t>(bit); break;
      case Word::l71a: f.leaf7_1_eax &= ~static_cast<uint32_t>(bit); break;
      case Word::e1c: f.ext1_ecx &= ~static_cast<uint32_t>(bit); break;
      case Word::e1d: f.ext1_edx &= ~static_cast<uint32_t>(bit); break;
      case Word::ld1a: f.leafd_1_eax &= ~static_cast<uint32_t>(bit); break;
      case Word::xcr0: f.xcr0 &= ~bit; break;
    }
    return true;
  }
  return false;
}

}  // namespace roam
