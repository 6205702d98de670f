# procpoolInstall.cmake - included by CMakeLists.txt: what `cmake --install`
# and CPack put where, and the files that let other builds find it.
#
#   <prefix>/include/procpool.h
#   <prefix>/lib/libprocpool.so.*, libprocpool.a     (Windows: bin/procpool.dll,
#                                                      lib/libprocpool.dll.a)
#   <prefix>/libexec/procpool-worker                  (Windows: bin/, beside
#                                                      the DLL, where the
#                                                      library looks for it)
#   <prefix>/lib/cmake/procpool/procpoolConfig.cmake  find_package(procpool)
#   <prefix>/lib/pkgconfig/procpool.pc                pkg-config procpool
#
# Two export sets: the shared library and the worker host need nothing at
# the user's end, the static library needs APR and threads; the package
# file loads the second only when those are found, so a user of the shared
# library does not need APR's development files.

include(CMakePackageConfigHelpers)

set(PP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/procpool)
set(PP_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS procpool EXPORT procpool-targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS procpool-worker EXPORT procpool-targets
        RUNTIME DESTINATION ${PP_WORKER_HOST_DIR})
# pp_apr (APR and the system libraries) goes with the static library, as
# procpool::apr.
set_target_properties(pp_apr PROPERTIES EXPORT_NAME apr)
install(TARGETS procpool_static pp_apr EXPORT procpool-static-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES "${PROJECT_SOURCE_DIR}/include/procpool.h"
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(EXPORT procpool-targets NAMESPACE procpool::
        FILE procpoolTargets.cmake DESTINATION ${PP_CMAKE_DIR})
install(EXPORT procpool-static-targets NAMESPACE procpool::
        FILE procpoolStaticTargets.cmake DESTINATION ${PP_CMAKE_DIR})

# The MPI backend, when built: an install component of its own, `mpi`,
# left out of a plain install and of the packages (it needs MPI's
# libraries, which the packages do not name):
#   cmake --install build --component mpi
# installs include/procpool_mpi.h, lib/libprocpool_mpi.so* and .a, and
# procpoolMpiTargets.cmake, which procpoolConfig.cmake loads when it is
# there and MPI is found (procpool::procpool_mpi, procpool_mpi_static).
if(PROCPOOL_MPI)
  install(TARGETS procpool_mpi procpool_mpi_static
          EXPORT procpool-mpi-targets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          COMPONENT mpi EXCLUDE_FROM_ALL)
  install(FILES "${PROJECT_SOURCE_DIR}/include/procpool_mpi.h"
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          COMPONENT mpi EXCLUDE_FROM_ALL)
  install(EXPORT procpool-mpi-targets NAMESPACE procpool::
          FILE procpoolMpiTargets.cmake DESTINATION ${PP_CMAKE_DIR}
          COMPONENT mpi EXCLUDE_FROM_ALL)
endif()

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/procpoolConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
  INSTALL_DESTINATION ${PP_CMAKE_DIR})
# SameMinorVersion: procpool is 0.x, where a new minor version may change
# the API (issue 10 itself adds to it), so find_package(procpool 0.2)
# accepts 0.2.0 and 0.2.5 but neither 0.1 nor 0.3.  From 1.0 on, when
# compatibility within a major version is promised, this becomes
# SameMajorVersion.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(pp_compatibility SameMinorVersion)
else()
  set(pp_compatibility SameMajorVersion)
endif()
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${pp_compatibility})
install(FILES "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
              "${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
        DESTINATION ${PP_CMAKE_DIR})

# procpool.pc.  Its prefix is relative to the .pc file itself
# (${pcfiledir}), so an install or an unpacked package (dpkg -x, a tarball)
# works wherever it lands.  Paths given absolute stay absolute.
if(IS_ABSOLUTE "${PP_PKGCONFIG_DIR}")
  set(PP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH pp_pc_up "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
       "${CMAKE_INSTALL_PREFIX}")
  string(REGEX REPLACE "/$" "" pp_pc_up "${pp_pc_up}")
  set(PP_PC_PREFIX "\${pcfiledir}/${pp_pc_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR LIBEXECDIR BINDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(PP_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(PP_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
if(WIN32)
  set(PP_PC_WORKER_HOST "\${bindir}/procpool-worker${CMAKE_EXECUTABLE_SUFFIX}")
  # The Windows builds of APR have no apr-1.pc.
  set(PP_PC_REQUIRES_PRIVATE "")
  set(PP_PC_LIBS_PRIVATE
      "-lapr-1 -lws2_32 -lmswsock -lrpcrt4 -ladvapi32 -lshell32 -lbcrypt")
else()
  set(PP_PC_WORKER_HOST "\${libexecdir}/procpool-worker")
  set(PP_PC_REQUIRES_PRIVATE "apr-1 >= 1.7")
  set(PP_PC_LIBS_PRIVATE "-lpthread")
  foreach(lib IN LISTS CMAKE_DL_LIBS)
    string(APPEND PP_PC_LIBS_PRIVATE " -l${lib}")
  endforeach()
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/procpool.pc.in"
               "${PROJECT_BINARY_DIR}/procpool.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/procpool.pc"
        DESTINATION ${PP_PKGCONFIG_DIR})

# ---- CPack: a .tar.gz and a .deb (a .zip on Windows) ----
# Only when procpool is the project: a parent project's CPack is its own.
if(PP_TOP_LEVEL)
  set(CPACK_PACKAGE_NAME procpool)
  set(CPACK_PACKAGE_VENDOR "procpool")
  set(CPACK_PACKAGE_CONTACT "procpool maintainers <procpool@localhost>")
  set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
      "Process pool for C: run functions in worker processes")
  set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
  set(CPACK_RESOURCE_FILE_README "${PROJECT_SOURCE_DIR}/README.md")
  set(CPACK_STRIP_FILES OFF)
  if(WIN32)
    set(CPACK_GENERATOR ZIP)
  else()
    set(CPACK_GENERATOR TGZ DEB)
  endif()
  set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
  set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
  # The shared library and the worker host need APR at run time; the
  # static library and procpool.pc name APR's development files
  # (Requires.private: apr-1), which a user who links statically installs.
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libapr1 (>= 1.7.0), libc6")
  set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libapr1-dev (>= 1.7.0), pkg-config")
  set(CPACK_SOURCE_GENERATOR TGZ)
  set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/")
  include(CPack)
endif()
