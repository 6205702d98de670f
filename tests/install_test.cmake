# install_test.cmake - run by CTest as test_install (issue 8, item 4):
# installs the build into a scratch prefix, copies pp_test_installed and
# the test task library there, and runs the program from the prefix, with
# nothing of the build tree on its search paths.
#
#   -DBUILD_DIR= -DPREFIX= -DPROGRAM= -DTASKLIB= -DBINDIR= -DLIBDIR=
#   -DWIN=ON|OFF -DEMULATOR=<wine or empty>
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}"
                        --prefix "${PREFIX}"
                RESULT_VARIABLE rv OUTPUT_QUIET)
if(NOT rv EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rv})")
endif()
get_filename_component(prog_name "${PROGRAM}" NAME)
get_filename_component(lib_name "${TASKLIB}" NAME)
file(COPY "${PROGRAM}" DESTINATION "${PREFIX}/${BINDIR}")
if(WIN)
  # Beside procpool.dll, where the loader finds the library's DLLs.
  file(COPY "${TASKLIB}" DESTINATION "${PREFIX}/${BINDIR}")
  set(lib "${PREFIX}/${BINDIR}/${lib_name}")
  set(env)
else()
  file(COPY "${TASKLIB}" DESTINATION "${PREFIX}/${LIBDIR}")
  set(lib "${PREFIX}/${LIBDIR}/${lib_name}")
  # The installed programs carry no path to the library (no rpath).
  set(env "LD_LIBRARY_PATH=${PREFIX}/${LIBDIR}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env ${env}
                        --unset=PROCPOOL_WORKER_EXE
                        ${EMULATOR} "${PREFIX}/${BINDIR}/${prog_name}" "${lib}"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rv
                TIMEOUT 300)
message("${out}${err}")
if(NOT rv EQUAL 0 OR NOT out MATCHES "installed: ok 81")
  message(FATAL_ERROR "the installed procpool did not work (exit ${rv})")
endif()
file(REMOVE_RECURSE "${PREFIX}")
