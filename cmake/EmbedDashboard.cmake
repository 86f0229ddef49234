# Writes OUT, a C++ file that holds the dashboard's page and script (DIR/index.html,
# DIR/dashboard.js) as raw string literals. Run by the build whenever either file changes.
set(delimiter "glam_asset")
file(READ "${DIR}/index.html" html)
file(READ "${DIR}/dashboard.js" js)
foreach(text html js)
  string(FIND "${${text}}" ")${delimiter}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "coordinator/dashboard: a file contains )${delimiter}\" and cannot be embedded")
  endif()
endforeach()
file(WRITE "${OUT}.tmp"
  "// Generated from coordinator/dashboard/ by cmake/EmbedDashboard.cmake: edit those files.\n"
  "#include \"coordinator/dashboard_assets.hpp\"\n"
  "namespace glam {\n"
  "const char* const dashboard_html = R\"${delimiter}(${html})${delimiter}\";\n"
  "const char* const dashboard_js = R\"${delimiter}(${js})${delimiter}\";\n"
  "}  // namespace glam\n")
file(RENAME "${OUT}.tmp" "${OUT}")
