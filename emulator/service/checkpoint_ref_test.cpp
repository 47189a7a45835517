// CheckpointRef: every form clients write, and the error each malformed one gets.
#include "service/checkpoint_ref.hpp"

#include <gtest/gtest.h>

#include "errors.hpp"

namespace kiln::service {
namespace {

using Form = CheckpointRef::Form;

TEST(CheckpointRef, ParsesEachForm) {
  auto r = CheckpointRef::parse("tinker://sess:train:0/weights/step-4");
  EXPECT_EQ(r.form, Form::tinker_path);
  EXPECT_EQ(r.run_id, "sess:train:0");
  EXPECT_EQ(r.kind, CheckpointKind::training);
  EXPECT_EQ(r.name, "step-4");
  r = CheckpointRef::parse("tinker://sess:train:0/sampler_weights/s1");
  EXPECT_EQ(r.kind, CheckpointKind::sampler);
  r = CheckpointRef::parse("cross_job://job-7/step-4");
  EXPECT_EQ(r.form, Form::cross_job);
  EXPECT_EQ(r.run_id, "job-7");
  EXPECT_FALSE(r.kind);
  EXPECT_EQ(r.name, "step-4");
  r = CheckpointRef::parse("step-4");
  EXPECT_EQ(r.form, Form::bare_name);
  EXPECT_EQ(r.name, "step-4");
}

std::string error_of(const std::string& ref, ErrorCode want) {
  try {
    CheckpointRef::parse(ref);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), want) << ref;
    return e.what();
  }
  ADD_FAILURE() << ref << " parsed";
  return "";
}

TEST(CheckpointRef, AMalformedTinkerPathIsA400NamingTheForms) {
  for (const char* bad : {"tinker://", "tinker://run", "tinker://run/weights", "tinker://run/other/x",
                          "tinker:///weights/x", "tinker://../weights/x", "tinker://run/weights/a/b"})
    EXPECT_NE(error_of(bad, ErrorCode::invalid_request).find("tinker://"), std::string::npos) << bad;
  error_of("tinker://run/weights/bad name", ErrorCode::invalid_request);  // the name grammar's own text
  EXPECT_EQ(error_of("tinker://run/x", ErrorCode::invalid_request),
            "Invalid tinker path: tinker://run/x (expected tinker://<training_run_id>/weights/<name> or "
            ".../sampler_weights/<name>)");
}

TEST(CheckpointRef, StorageLocationsAndBadCrossJobReferencesAreUserErrors) {
  EXPECT_EQ(error_of("gs://bucket/x", ErrorCode::user), "gs:// references are not available offline: 'gs://bucket/x'");
  EXPECT_NE(error_of("/ckpt/x", ErrorCode::user).find("absolute checkpoint paths"), std::string::npos);
  for (const char* bad : {"cross_job://", "cross_job://job", "cross_job:///x", "cross_job://job/"})
    EXPECT_NE(error_of(bad, ErrorCode::user).find("expected cross_job://<job_id>/<name>"), std::string::npos) << bad;
}

TEST(CheckpointRef, TheRestIdNamesAKindAndOneSegment) {
  const auto r = CheckpointRef::parse_id("run-1", "sampler_weights/s1");
  EXPECT_EQ(r.run_id, "run-1");
  EXPECT_EQ(r.kind, CheckpointKind::sampler);
  EXPECT_EQ(r.name, "s1");
  for (const char* bad : {"", "weights", "weights/", "other/x", "weights/a/b"})
    EXPECT_THROW(CheckpointRef::parse_id("run-1", bad), InvalidRequest) << bad;
}

}  // namespace
}  // namespace kiln::service
