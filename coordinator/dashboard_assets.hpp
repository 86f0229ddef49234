#pragma once
// The dashboard's page and script (coordinator/dashboard/), compiled into glam by
// cmake/EmbedDashboard.cmake so that the binary serves them with no files beside it.
namespace glam {

extern const char* const dashboard_html;
extern const char* const dashboard_js;

}  // namespace glam
