# cmake -P script behind the CTest test "the installed package builds and runs
# tests/consume": installs a warden build tree into a scratch prefix, then configures,
# builds and runs this project against it with find_package, as a user would.
#   -DWARDEN_BINARY_DIR=  the warden build tree to install
#   -DWORK_DIR=           scratch directory (emptied first)
#   -DGENERATOR= -DCXX_COMPILER= -DBUILD_TYPE=   passed on to the consumer's configure
foreach(var WARDEN_BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER BUILD_TYPE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()
set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

execute_process(COMMAND ${CMAKE_COMMAND} --install ${WARDEN_BINARY_DIR} --prefix ${prefix}
  COMMAND_ERROR_IS_FATAL ANY)
# Only the prefix is given: warden must come from it, its dependencies from the system.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${build}
  -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  -DCMAKE_PREFIX_PATH=${prefix}
  COMMAND_ERROR_IS_FATAL ANY)
file(STRINGS ${build}/CMakeCache.txt found REGEX "^warden_DIR:")
string(FIND "${found}" "${prefix}/" at)
if(NOT at GREATER -1)
  message(FATAL_ERROR "the consumer found warden outside the install prefix: ${found}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} --parallel 2
  COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${build} --output-on-failure
  COMMAND_ERROR_IS_FATAL ANY)
