#include "model/tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::model {
namespace {

// Byte-level BPE vocabularies (GPT-2, Qwen, Llama 3) give the bytes the first 256 ids in
// bytes_to_unicode order: '!' is 0, 'A' 32, and space and newline, not printable, 220 and 198
// (GPT-2's "Ġ" and "Ċ").
TEST(StandInTokenizer, BytesGetTheirRealSingleByteIds) {
  const auto qwen = StandInTokenizer::for_family("qwen3");
  ASSERT_TRUE(qwen);
  EXPECT_EQ(qwen->encode("!A ~\n"), (std::vector<int64_t>{0, 32, 220, 93, 198}));
  const auto llama = StandInTokenizer::for_family("llama3_chat");
  ASSERT_TRUE(llama);
  EXPECT_EQ(llama->encode("Hello"), (std::vector<int64_t>{39, 68, 75, 75, 78}));
  // Kiln's own models: the id is the byte.
  EXPECT_EQ(StandInTokenizer::for_family("")->encode("Hi"), (std::vector<int64_t>{'H', 'i'}));
  EXPECT_FALSE(StandInTokenizer::for_family("deepseek_v3"));
}

TEST(StandInTokenizer, DecodingIsValidUtf8ForEveryId) {
  const auto qwen = *StandInTokenizer::for_family("qwen3");
  const std::string text = "h\xC3\xA9llo \xE2\x9C\x93";  // "héllo ✓"
  EXPECT_EQ(qwen.decode(qwen.encode(text)), text);
  EXPECT_EQ(qwen.decode({151644, 0, 151645}), "<|im_start|>!<|im_end|>");
  EXPECT_EQ(qwen.decode({5000}), "\xEF\xBF\xBD");  // neither a byte nor a special token: U+FFFD
  const auto e_acute = qwen.encode("\xC3\xA9");
  EXPECT_EQ(qwen.decode({e_acute[0]}), "\xEF\xBF\xBD");      // half a character, final
  EXPECT_EQ(qwen.decode({e_acute[0]}, true), "");             // held back for the next token
  EXPECT_EQ(StandInTokenizer::opaque("gpt_oss").decode({1, 2}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Every byte pair and triple decodes to valid UTF-8 (what a JSON encoder demands): overlong
  // forms, surrogates and code points above U+10FFFF are U+FFFD too.
  const auto valid = [](const std::string& s) {
    try {
      (void)nlohmann::json(s).dump();
      return true;
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  };
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) {
      ASSERT_TRUE(valid(utf8_text(std::string{char(a), char(b)}, false))) << a << " " << b;
      ASSERT_TRUE(valid(utf8_text(std::string{char(a), char(b), char(0x80), char(0xBF)}, false))) << a << " " << b;
    }
  EXPECT_EQ(utf8_text("\xC0\xB5", false), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_text("\xED\xA0\x80", false), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(StandInTokenizer, ChatTemplatesAreTheFamilies) {
  const auto qwen = *StandInTokenizer::for_family("qwen3");
  std::vector<int64_t> want = {151644};
  for (int64_t id : qwen.encode("user\nHi")) want.push_back(id);
  want.push_back(151645);
  for (int64_t id : qwen.encode("\n")) want.push_back(id);
  want.push_back(151644);
  for (int64_t id : qwen.encode("assistant\n")) want.push_back(id);
  EXPECT_EQ(qwen.chat_prompt({{"user", "Hi"}}), want);
  EXPECT_EQ(qwen.end_of_turn(), (std::vector<int64_t>{151645, 151643}));
  const auto llama = *StandInTokenizer::for_family("llama3");
  const auto ids = llama.chat_prompt({{"user", "Hi"}});
  EXPECT_EQ(llama.decode(ids), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_THROW(StandInTokenizer::for_family("")->chat_prompt({{"user", "Hi"}}), std::invalid_argument);
}

}  // namespace
}  // namespace kiln::model
