#pragma once
// The merge lookup of BPE encoding: (left id, right id) -> (rank, merged id). Encoding does one
// lookup per adjacent pair, so this is an open-addressing table with linear probing over one
// flat array rather than a node-based std::unordered_map.
#include <cstdint>
#include <vector>

namespace agpt {

struct BpeMerge {
    int32_t rank = -1;  // lower merges first; -1: no merge
    int32_t id = -1;    // the merged token
};

class BpeMergeTable {
  public:
    static uint64_t key(int32_t left, int32_t right) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
               static_cast<uint32_t>(right);
    }

    // Sized for n entries at most half full.
    void reset(std::size_t n) {
        std::size_t cap = 16;
        while (cap < 2 * n) cap *= 2;
        slots_.assign(cap, Slot{});
        mask_ = cap - 1;
        size_ = 0;
    }

    // A repeated key replaces the earlier value, as in Hugging Face's merge map (a merge listed
    // twice takes the later rank).
    void assign(int32_t left, int32_t right, BpeMerge value) {
        const uint64_t k = key(left, right);
        for (std::size_t i = slot_of(k);; i = (i + 1) & mask_) {
            if (slots_[i].key == kEmpty) {
                slots_[i] = {k, value};
                size_++;
                return;
            }
            if (slots_[i].key == k) {
                slots_[i].value = value;
                return;
            }
        }
    }

    BpeMerge find(int32_t left, int32_t right) const {
        const uint64_t k = key(left, right);
        for (std::size_t i = slot_of(k);; i = (i + 1) & mask_) {
            if (slots_[i].key == k) return slots_[i].value;
            if (slots_[i].key == kEmpty) return {};
        }
    }

    std::size_t size() const { return size_; }

  private:
    // Ids are non-negative int32, so no real key has all bits set.
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    struct Slot {
        uint64_t key = kEmpty;
        BpeMerge value;
    };
    std::size_t slot_of(uint64_t k) const {
        return static_cast<std::size_t>((k * 0x9E3779B97F4A7C15ULL) >> 32) & mask_;
    }

    std::vector<Slot> slots_ = std::vector<Slot>(16);
    std::size_t mask_ = 15;
    std::size_t size_ = 0;
};

}  // namespace agpt
