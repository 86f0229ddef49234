# BLIS from Debian. libblis.so.4 is a Debian alternative that defaults to the OpenMP
# build, whose busy thread teams oversubscribe the cores when several actor threads
# call it. glam links the pthread build by its full path and puts its folder on the
# run path, so the alternative's setting does not matter.
find_path(BLIS_INCLUDE_DIR blis.h PATH_SUFFIXES blis)
find_library(BLIS_LIBRARY NAMES libblis.so.4
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/blis-pthread NO_DEFAULT_PATH)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BLIS REQUIRED_VARS BLIS_INCLUDE_DIR BLIS_LIBRARY)
if(BLIS_FOUND AND NOT TARGET BLIS::blis)
  get_filename_component(BLIS_LIBRARY_DIR "${BLIS_LIBRARY}" DIRECTORY)
  add_library(BLIS::blis SHARED IMPORTED)
  set_target_properties(BLIS::blis PROPERTIES
    IMPORTED_LOCATION "${BLIS_LIBRARY}"
    IMPORTED_NO_SONAME FALSE
    INTERFACE_INCLUDE_DIRECTORIES "${BLIS_INCLUDE_DIR}"
    INTERFACE_LINK_OPTIONS "LINKER:-rpath,${BLIS_LIBRARY_DIR}")
endif()
