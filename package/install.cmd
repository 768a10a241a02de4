@echo off
rem install.cmd - installs the gate driver @VERSION@ from this folder.
rem
rem   install.cmd [/auto] [Name=Value ...]
rem
rem Name=Value pairs are registry values of the driver's Parameters key
rem (see README.md, "Configuration"); values not given take the driver's
rem defaults. /auto makes the service start at boot (default: on demand).
rem Run from an elevated prompt. Every step is checked; on a failure the
rem script says what failed and removes what it had done (uninstall.cmd
rem /rollback), so nothing is left half-installed.
setlocal EnableExtensions EnableDelayedExpansion

set "SERVICE=gate"
set "HERE=%~dp0"
set "DRIVERS=%SystemRoot%\System32\drivers"
set "SYS=%DRIVERS%\gate.sys"
set "APPDIR=%ProgramFiles%\gate"
set "SVCKEY=HKLM\SYSTEM\CurrentControlSet\Services\%SERVICE%"
set "PARAMS=%SVCKEY%\Parameters"
set "LOGKEY=HKLM\SYSTEM\CurrentControlSet\Services\EventLog\System\%SERVICE%"
set "START=demand"
set "NVALUES=0"

rem ---- registry value names and types (generated from the driver's table)
@VALUE_TYPES@

rem ---- arguments: check them all before changing anything
:args
if "%~1"=="" goto args_done
set "ARG=%~1"
if /i "!ARG!"=="/auto" (
    set "START=auto"
    shift
    goto args
)
if /i "!ARG!"=="/?" goto help
if /i "!ARG!"=="/help" goto help
set "NAME="
set "VALUE="
for /f "tokens=1,* delims==" %%a in ("!ARG!") do (
    set "NAME=%%a"
    set "VALUE=%%b"
)
if "!NAME!"=="" (
    echo install.cmd: "!ARG!" is not Name=Value.
    goto usage_error
)
rem cmd splits unquoted arguments at "=": ListenPort=8443 arrives as two.
if "!VALUE!"=="" if not "%~2"=="" (
    set "VALUE=%~2"
    shift
)
set "TYPE="
for %%t in (!KNOWN!) do (
    for /f "tokens=1,2 delims=:" %%x in ("%%t") do (
        if /i "%%x"=="!NAME!" (
            set "TYPE=%%y"
            set "NAME=%%x"
        )
    )
)
if "!TYPE!"=="" (
    echo install.cmd: unknown registry value "!NAME!". Known values: !NAMES!
    goto usage_error
)
if "!VALUE!"=="" (
    echo install.cmd: !NAME! has no value ^(write !NAME!=value^).
    goto usage_error
)
if not "!TYPE!"=="REG_SZ" if not "!TYPE!"=="REG_MULTI_SZ" (
    echo !VALUE!| findstr /r /x "[0-9][0-9]*" >nul
    if errorlevel 1 (
        echo install.cmd: !NAME!=!VALUE! is not a decimal number ^(!NAME! is !TYPE!^).
        goto usage_error
    )
)
set /a NVALUES+=1
set "V_NAME_!NVALUES!=!NAME!"
set "V_TYPE_!NVALUES!=!TYPE!"
set "V_DATA_!NVALUES!=!VALUE!"
shift
goto args
:args_done

rem ---- preconditions
call :step "checking for administrator rights"
reg add "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1
if errorlevel 1 (
    call :fail "this needs an elevated prompt (Run as administrator)" norollback
    exit /b 5
)
reg delete "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1

call :step "checking the package files in %HERE%"
for %%f in (gate.sys gate.man uninstall.cmd) do (
    if not exist "%HERE%%%f" (
        call :fail "%%f is missing from %HERE%" norollback
        exit /b 2
    )
)
set "HAVE_CTL=0"
if exist "%HERE%gatectl.exe" set "HAVE_CTL=1"

call :step "checking that %SERVICE% is not installed already"
sc query %SERVICE% >nul 2>&1
if not errorlevel 1 (
    call :fail "a service named %SERVICE% exists already; run uninstall.cmd first" norollback
    exit /b 3
)
if exist "%SYS%" (
    call :fail "%SYS% exists already; run uninstall.cmd first" norollback
    exit /b 3
)

rem ---- from here on, a failure rolls everything back
call :step "copying gate.sys to %DRIVERS%"
copy /y "%HERE%gate.sys" "%SYS%" >nul
if errorlevel 1 goto failed
if not exist "%SYS%" goto failed

call :step "copying gate.man, uninstall.cmd and the tools to %APPDIR%"
if not exist "%APPDIR%" mkdir "%APPDIR%"
if not exist "%APPDIR%" goto failed
for %%f in (gate.man uninstall.cmd README.md gate.wprp gate.wpaProfile gatectl.exe) do (
    if exist "%HERE%%%f" (
        copy /y "%HERE%%%f" "%APPDIR%\%%f" >nul
        if errorlevel 1 goto failed
    )
)

call :step "creating the kernel service %SERVICE% (start= %START%)"
sc create %SERVICE% type= kernel start= %START% error= normal binPath= "%SYS%" DisplayName= "gate anti-DoS TCP front gate" >nul
if errorlevel 1 goto failed
sc query %SERVICE% >nul 2>&1
if errorlevel 1 goto failed

call :step "writing %NVALUES% Parameters value(s) to %PARAMS%"
reg add "%PARAMS%" /f >nul
if errorlevel 1 goto failed
for /l %%i in (1,1,%NVALUES%) do (
    call :step "  !V_NAME_%%i! = !V_DATA_%%i! (!V_TYPE_%%i!)"
    reg add "%PARAMS%" /v "!V_NAME_%%i!" /t !V_TYPE_%%i! /d "!V_DATA_%%i!" /f >nul
    if errorlevel 1 goto failed
)

call :step "registering the System log source %SERVICE% (message table in gate.sys)"
reg add "%LOGKEY%" /v EventMessageFile /t REG_EXPAND_SZ /d "%%SystemRoot%%\System32\IoLogMsg.dll;%%SystemRoot%%\System32\drivers\gate.sys" /f >nul
if errorlevel 1 goto failed
reg add "%LOGKEY%" /v TypesSupported /t REG_DWORD /d 7 /f >nul
if errorlevel 1 goto failed

call :step "registering the ETW manifest (wevtutil im)"
wevtutil im "%APPDIR%\gate.man" /rf:"%SYS%" /mf:"%SYS%"
if errorlevel 1 goto failed

call :step "starting %SERVICE%"
sc start %SERVICE% >nul
if errorlevel 1 (
    echo install.cmd: the driver refused to start. Its reason, from the System log:
    wevtutil qe System /q:"*[System[Provider[@Name='%SERVICE%']]]" /c:1 /rd:true /f:text
    echo install.cmd: ^(also: Event Viewer, Windows Logs ^> System, source %SERVICE%; or the
    echo TcpFrontGate/Admin log^). Fix the value and run install.cmd again.
    goto failed
)
call :wait_running
if errorlevel 1 goto failed

if "%HAVE_CTL%"=="1" (
    call :step "gatectl status"
    "%APPDIR%\gatectl.exe" status
    if errorlevel 1 goto failed
) else (
    echo install.cmd: gatectl.exe is not in this package; skipping "gatectl status".
    sc query %SERVICE%
)
echo install.cmd: %SERVICE% @VERSION@ is installed and running.
exit /b 0

rem ---- helpers
:step
echo install.cmd: %~1
exit /b 0

:wait_running
rem Up to ~10 s for STATE RUNNING.
for /l %%n in (1,1,20) do (
    sc query %SERVICE% | findstr /c:"RUNNING" >nul
    if not errorlevel 1 exit /b 0
    ping -n 2 127.0.0.1 >nul
)
echo install.cmd: %SERVICE% did not reach RUNNING within 10 s.
exit /b 1

:fail
echo install.cmd: FAILED: %~1
if "%~2"=="norollback" echo install.cmd: nothing was changed.
exit /b 0

:failed
echo install.cmd: FAILED at the step above ^(exit code %errorlevel%^); removing what was installed.
call "%HERE%uninstall.cmd" /rollback
exit /b 1

:help
call :usage
exit /b 0

:usage_error
echo install.cmd: nothing was changed.
call :usage
exit /b 2

:usage
echo usage: install.cmd [/auto] [Name=Value ...]
echo   Name is a registry value of the driver's Parameters key: !NAMES!
echo   e.g. install.cmd ListenPort=8443 RateMilliPerSecond=5000 "DenyList=203.0.113.0/24\0198.51.100.7"
exit /b 0
